//! The catalog: every live table declared once — its name, its Arrow schema (`schema.rs`) and
//! the time columns a scan prunes on — and, once its feature runs, the source that fills it.
//! The SQL engine registers exactly these tables (docs/design.md, "Tables").

use crate::schema;
use crate::table::{EmptySource, LiveTable, PartitionSource};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use std::sync::Arc;

/// A live table's declaration, without its rows.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    schema: fn() -> SchemaRef,
    /// The timestamp columns a scan prunes partitions on.
    pub time_columns: &'static [&'static str],
}

impl TableSpec {
    pub fn schema(&self) -> SchemaRef {
        (self.schema)()
    }

    /// The table, filled by `source`.
    pub fn with(&'static self, source: Arc<dyn PartitionSource>) -> TableDef {
        TableDef {
            name: self.name,
            schema: self.schema(),
            time_columns: self.time_columns,
            source,
        }
    }
}

/// A live table: name, schema, prunable time columns and the source of its rows.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub time_columns: &'static [&'static str],
    pub source: Arc<dyn PartitionSource>,
}

const WINDOW: &[&str] = &["window_start", "window_end"];

pub const RED: TableSpec = TableSpec {
    name: "red",
    schema: || schema::RED.clone(),
    time_columns: WINDOW,
};
pub const RED_WINDOWS: TableSpec = TableSpec {
    name: "red_windows",
    schema: || schema::RED_WINDOWS.clone(),
    time_columns: WINDOW,
};
pub const SPANS: TableSpec = TableSpec {
    name: "spans",
    schema: || schema::SPANS.clone(),
    time_columns: &["end_time"],
};
pub const METRIC_POINTS: TableSpec = TableSpec {
    name: "metric_points",
    schema: || schema::METRIC_POINTS.clone(),
    time_columns: WINDOW,
};
pub const ANOMALIES: TableSpec = TableSpec {
    name: "anomalies",
    schema: || schema::ANOMALIES.clone(),
    time_columns: WINDOW,
};
pub const PREDICTIONS: TableSpec = TableSpec {
    name: "predictions",
    schema: || schema::PREDICTIONS.clone(),
    time_columns: &["window_end"],
};
pub const PROBLEMS: TableSpec = TableSpec {
    name: "problems",
    schema: || schema::PROBLEMS.clone(),
    time_columns: &["updated_at"],
};
pub const PROBLEM_MEMBERS: TableSpec = TableSpec {
    name: "problem_members",
    schema: || schema::PROBLEM_MEMBERS.clone(),
    time_columns: &["updated_at"],
};
pub const SERVICE_GRAPH: TableSpec = TableSpec {
    name: "service_graph",
    schema: || schema::SERVICE_GRAPH.clone(),
    time_columns: WINDOW,
};
pub const SESSIONS: TableSpec = TableSpec {
    name: "sessions",
    schema: || schema::SESSIONS.clone(),
    time_columns: &["session_start", "session_end"],
};
pub const CONTINUOUS_RESULTS: TableSpec = TableSpec {
    name: "continuous_results",
    schema: || schema::CONTINUOUS_RESULTS.clone(),
    time_columns: WINDOW,
};

/// Every live table, in the order `SHOW TABLES` lists them.
pub static ALL: [&TableSpec; 11] = [
    &RED,
    &RED_WINDOWS,
    &SPANS,
    &METRIC_POINTS,
    &ANOMALIES,
    &PREDICTIONS,
    &SERVICE_GRAPH,
    &SESSIONS,
    &CONTINUOUS_RESULTS,
    &PROBLEMS,
    &PROBLEM_MEMBERS,
];

/// Every table of [`ALL`] as a DataFusion provider, by name, reading from the source declared
/// for it; a table nobody declared (its feature is off) reads as empty.
pub fn providers(declared: Vec<TableDef>) -> Vec<(String, Arc<dyn TableProvider>)> {
    ALL.iter()
        .map(|spec| {
            let def = declared
                .iter()
                .find(|d| d.name == spec.name)
                .cloned()
                .unwrap_or_else(|| spec.with(Arc::new(EmptySource)));
            (
                def.name.to_string(),
                Arc::new(LiveTable::new(def.schema, def.time_columns, def.source))
                    as Arc<dyn TableProvider>,
            )
        })
        .collect()
}
