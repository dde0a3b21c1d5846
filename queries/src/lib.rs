//! redwatch queries: live Arrow tables over the engine's results, served by DataFusion over HTTP
//! (`POST /api/v1/sql`) and Arrow Flight SQL, plus the SQL functions of this domain.
//!
//! Tables are DataFusion `TableProvider`s over immutable record-batch partitions; a query takes a
//! snapshot and never blocks the operators that append to them.

pub mod admission;
pub mod anomalies;
pub mod console;
pub mod continuous;
pub mod flight;
pub mod format;
pub mod http;
pub mod metric_points;
pub mod metrics;
pub mod pool;
pub mod red;
pub mod schema;
pub mod service_graph;
pub mod session;
pub mod session_windows;
pub mod spans;
pub mod table;
pub mod udf;

use datafusion::catalog::TableProvider;
use std::sync::Arc;
use table::{EmptySource, LiveTable, PartitionSource};

/// An optional table's producer: `(name, source, prunable time columns)`.
pub type ExtraTable = (
    &'static str,
    Arc<dyn PartitionSource>,
    &'static [&'static str],
);

/// The live tables of one engine.
pub struct Tables {
    pub red: Arc<red::RedTable>,
    pub spans: Arc<spans::SpansTable>,
    pub continuous: Arc<continuous::ContinuousResults>,
    pub anomalies: Arc<anomalies::AnomaliesTable>,
    pub predictions: Arc<anomalies::PredictionsTable>,
}

impl Tables {
    /// Every table as a DataFusion provider, by name (tables without a producer yet are empty).
    pub fn providers(&self) -> Vec<(String, Arc<dyn TableProvider>)> {
        self.providers_with(Vec::new())
    }

    /// [`providers`](Self::providers), with the tables whose producers are optional supplied
    /// as `(name, source, time columns)` (e.g. `service_graph` when the operator runs).
    pub fn providers_with(&self, extra: Vec<ExtraTable>) -> Vec<(String, Arc<dyn TableProvider>)> {
        let mut declared: Vec<ExtraTable> = vec![
            ("red", self.red.clone(), &["window_start", "window_end"]),
            ("spans", self.spans.clone(), &["end_time"]),
            (
                "anomalies",
                self.anomalies.clone(),
                &["window_start", "window_end"],
            ),
            ("predictions", self.predictions.clone(), &["window_end"]),
            (
                "continuous_results",
                self.continuous.clone(),
                &["window_start", "window_end"],
            ),
        ];
        declared.extend(extra);
        catalog(declared)
    }
}

/// Every table of [`schema::all`] as a DataFusion provider, by name, reading from the source
/// declared for it (`(name, source, prunable time columns)`); a table nobody declared (its
/// feature is off) reads as empty.
pub fn catalog(declared: Vec<ExtraTable>) -> Vec<(String, Arc<dyn TableProvider>)> {
    schema::all()
        .into_iter()
        .map(|(name, schema)| {
            let (source, time): (Arc<dyn PartitionSource>, &'static [&'static str]) =
                match declared.iter().find(|(n, _, _)| *n == name) {
                    Some((_, source, time)) => (source.clone(), *time),
                    None => (Arc::new(EmptySource), &[]),
                };
            (
                name.to_string(),
                Arc::new(LiveTable::new(schema, time, source)) as Arc<dyn TableProvider>,
            )
        })
        .collect()
}
