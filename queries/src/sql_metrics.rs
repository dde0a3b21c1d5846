//! The SQL self-metrics, shared by every way a query arrives (HTTP API, Flight SQL): one count
//! of queries, failures by error code and the time spent in successful ones.

use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Error codes counted in `redwatch_sql_queries_failed_total{code}`: the [`QueryError`] codes
/// plus the protocols' own (`bad_request`: not a query request; `forbidden`: refused by the HTTP
/// API's content-type, `Host` or `Origin` checks; `encode`: the result could not be serialized).
///
/// [`QueryError`]: crate::query::QueryError
pub const FAILURE_CODES: [&str; 11] = [
    "bad_request",
    "forbidden",
    "busy",
    "invalid_sql",
    "invalid_query",
    "read_only",
    "timeout",
    "memory_limit",
    "result_too_large",
    "query_failed",
    "encode",
];

/// Handles to the SQL self-metrics of one registry.
#[derive(Debug)]
pub struct QueryMetrics {
    queries: Arc<Counter>,
    failures: Vec<(&'static str, Arc<Counter>)>,
    latency_sum: Arc<Gauge>,
    /// Serializes the read-modify-write of the latency sum (a gauge holds an `f64`).
    latency_lock: Mutex<()>,
}

impl QueryMetrics {
    /// Registers (or finds) the SQL metrics in `registry`: every caller with the same registry
    /// counts into the same series.
    pub fn new(registry: &Registry) -> Arc<Self> {
        Arc::new(QueryMetrics {
            queries: registry.counter(
                "redwatch_sql_queries_total",
                "SQL queries received (HTTP API and Flight SQL).",
                &[],
            ),
            failures: FAILURE_CODES
                .iter()
                .map(|c| {
                    (
                        *c,
                        registry.counter(
                            "redwatch_sql_queries_failed_total",
                            "SQL queries that failed, by error code.",
                            &[("code", c)],
                        ),
                    )
                })
                .collect(),
            latency_sum: registry.gauge(
                "redwatch_sql_query_seconds_sum",
                "Total seconds spent executing successful SQL queries.",
                &[],
            ),
            latency_lock: Mutex::new(()),
        })
    }

    /// A query arrived.
    pub fn received(&self) {
        self.queries.inc();
    }

    /// A query failed with this error code (one of [`FAILURE_CODES`]).
    pub fn failed(&self, code: &str) {
        if let Some((_, c)) = self.failures.iter().find(|(n, _)| *n == code) {
            c.inc();
        }
    }

    /// A query succeeded after running this long.
    pub fn succeeded(&self, elapsed: Duration) {
        let _guard = self.latency_lock.lock();
        self.latency_sum
            .set(self.latency_sum.get() + elapsed.as_secs_f64());
    }
}
