//! redwatch queries: live Arrow tables over the engine's results, served by DataFusion over HTTP
//! (`POST /api/v1/sql`) and Arrow Flight SQL, plus the SQL functions of this domain.
//!
//! Tables are DataFusion `TableProvider`s over immutable record-batch partitions; a query takes a
//! snapshot and never blocks the operators that append to them.

#![forbid(unsafe_code)]

pub mod admission;
pub mod anomalies;
pub mod catalog;
pub mod config;
pub mod console;
pub mod continuous;
pub mod flight;
pub mod format;
pub mod http;
pub mod metric_points;
pub mod pool;
pub mod problems;
pub mod query;
pub mod red;
pub mod schema;
pub mod service_graph;
pub mod sessions;
pub mod spans;
pub mod sql_metrics;
pub mod table;
pub mod udf;
pub mod window_store;

use datafusion::catalog::TableProvider;
use std::sync::Arc;

/// The live tables of one engine.
pub struct Tables {
    pub red: Arc<red::RedTable>,
    pub spans: Arc<spans::SpansTable>,
    pub continuous: Arc<continuous::ContinuousResults>,
    pub anomalies: Arc<anomalies::AnomaliesTable>,
    pub predictions: Arc<anomalies::PredictionsTable>,
}

impl Tables {
    /// Every table of the catalog as a DataFusion provider, by name (tables without a producer
    /// here are empty).
    pub fn providers(&self) -> Vec<(String, Arc<dyn TableProvider>)> {
        catalog::providers(vec![
            catalog::RED.with(self.red.clone()),
            catalog::RED_WINDOWS.with(self.red.windows()),
            catalog::SPANS.with(self.spans.clone()),
            catalog::ANOMALIES.with(self.anomalies.clone()),
            catalog::PREDICTIONS.with(self.predictions.clone()),
            catalog::CONTINUOUS_RESULTS.with(self.continuous.clone()),
        ])
    }
}
