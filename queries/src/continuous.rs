//! Continuous queries: named SQL queries run after every closed primary window, their rows kept
//! in `continuous_results` and their numeric columns exported as Prometheus gauges
//! `redwatch_continuous_<name>{column="…", <string columns>…}`.
//!
//! The trigger is a [`RedSink`] (called on the operator task): it only enqueues the window on a
//! bounded channel; a separate task runs the queries, so a slow query delays nothing but itself.
//! When the queue is full, the window is skipped and counted.

use crate::config::ContinuousQuery;
use crate::query::QueryEngine;
use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use arrow::array::{Array, ArrayRef, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_engine::telemetry::{Counter, Registry};
use redwatch_operators::red::{RedRow, RedSink};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Distinct label sets a query may create as gauges.
const MAX_SERIES_PER_QUERY: usize = 1000;
/// Result rows of `continuous_results` kept.
const MAX_ROWS: usize = 100_000;

/// The `continuous_results` table.
#[derive(Debug, Default)]
pub struct ContinuousResults {
    parts: Mutex<VecDeque<Partition>>,
}

impl PartitionSource for ContinuousResults {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.parts
            .lock()
            .map(|p| {
                p.iter()
                    .filter(|x| filter.may_match(x))
                    .map(|x| x.batch.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl ContinuousResults {
    fn push(&self, name: &str, start: UnixNanos, end: UnixNanos, rows: &[String]) {
        let mut n = StringBuilder::new();
        let mut ws = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut we = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut cols = StringBuilder::new();
        for r in rows {
            n.append_value(name);
            ws.append_value((start / 1_000_000) as i64);
            we.append_value((end / 1_000_000) as i64);
            cols.append_value(r);
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(n.finish()),
            Arc::new(ws.finish()),
            Arc::new(we.finish()),
            Arc::new(cols.finish()),
        ];
        let Ok(batch) = RecordBatch::try_new(schema::CONTINUOUS_RESULTS.clone(), arrays) else {
            return;
        };
        let Ok(mut parts) = self.parts.lock() else {
            return;
        };
        parts.push_back(Partition {
            batch,
            time_ranges: vec![
                ("window_start", start as i128, start as i128),
                ("window_end", end as i128, end as i128),
            ],
            service_range: None,
        });
        let mut total: usize = parts.iter().map(|p| p.batch.num_rows()).sum();
        while total > MAX_ROWS {
            match parts.pop_front() {
                Some(p) => total -= p.batch.num_rows(),
                None => break,
            }
        }
    }
}

/// The sink that notices closed windows.
pub struct ContinuousTrigger {
    tx: mpsc::Sender<(UnixNanos, UnixNanos)>,
    last: AtomicU64,
    skipped: Arc<Counter>,
}

impl RedSink for ContinuousTrigger {
    fn on_final(&self, rows: &[RedRow]) {
        for r in rows.iter().filter(|r| r.primary && r.first) {
            if r.start > self.last.load(Ordering::Relaxed) || self.last.load(Ordering::Relaxed) == 0
            {
                self.last.store(r.start.max(1), Ordering::Relaxed);
                if self.tx.try_send((r.start, r.end)).is_err() {
                    self.skipped.inc();
                }
            }
        }
    }
}

/// Replaces `$window_start` / `$window_end` with timestamp literals.
pub fn substitute(query: &str, start: UnixNanos, end: UnixNanos) -> String {
    let lit = |ns: UnixNanos| {
        let ms = (ns / 1_000_000) as i64;
        let dt = chrono_like(ms);
        format!("TIMESTAMP '{dt}'")
    };
    query
        .replace("$window_start", &lit(start))
        .replace("$window_end", &lit(end))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` without pulling a date crate into this one.
fn chrono_like(ms: i64) -> String {
    let arr = arrow::array::TimestampMillisecondArray::from(vec![ms]).with_timezone("UTC");
    let opts = arrow::util::display::FormatOptions::default()
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    arrow::util::display::ArrayFormatter::try_new(&arr, &opts)
        .map(|f| f.value(0).to_string())
        .unwrap_or_default()
}

/// The continuous queries' runs, waiting for closed windows from their [`ContinuousTrigger`].
pub struct ContinuousRuns {
    rx: mpsc::Receiver<(UnixNanos, UnixNanos)>,
    runs: Vec<(ContinuousQuery, Arc<Counter>, Arc<Counter>, &'static str)>,
    results: Arc<ContinuousResults>,
    registry: Arc<Registry>,
}

/// The trigger sink to register with the RED operator, and the runs it triggers (start them
/// with [`ContinuousRuns::run`] once the query engine exists).
pub fn trigger(
    queries: Vec<ContinuousQuery>,
    results: Arc<ContinuousResults>,
    registry: Arc<Registry>,
) -> (Arc<ContinuousTrigger>, ContinuousRuns) {
    let (tx, rx) = mpsc::channel::<(UnixNanos, UnixNanos)>(16);
    let skipped = registry.counter(
        "redwatch_continuous_windows_skipped_total",
        "Closed windows for which continuous queries were skipped because the previous run was still busy.",
        &[],
    );
    let runs: Vec<(ContinuousQuery, Arc<Counter>, Arc<Counter>, &'static str)> = queries
        .into_iter()
        .map(|q| {
            let ok = registry.counter(
                "redwatch_continuous_runs_total",
                "Continuous query runs, per query and outcome.",
                &[("query", &q.name), ("outcome", "ok")],
            );
            let failed = registry.counter(
                "redwatch_continuous_runs_total",
                "Continuous query runs, per query and outcome.",
                &[("query", &q.name), ("outcome", "error")],
            );
            // Gauge family names must be 'static; there is one per configured query.
            let family: &'static str =
                Box::leak(format!("redwatch_continuous_{}", q.name).into_boxed_str());
            (q, ok, failed, family)
        })
        .collect();
    let trigger = Arc::new(ContinuousTrigger {
        tx,
        last: AtomicU64::new(0),
        skipped,
    });
    let runs = ContinuousRuns {
        rx,
        runs,
        results,
        registry,
    };
    (trigger, runs)
}

impl ContinuousRuns {
    /// Runs every query on each closed window until `cancel`.
    pub async fn run(self, engine: QueryEngine, cancel: CancellationToken) {
        let ContinuousRuns {
            mut rx,
            runs,
            results,
            registry,
        } = self;
        let mut series: Vec<usize> = vec![0; runs.len()];
        loop {
            let (start, end) = tokio::select! {
                _ = cancel.cancelled() => break,
                w = rx.recv() => match w { Some(w) => w, None => break },
            };
            for (i, (q, ok, failed, family)) in runs.iter().enumerate() {
                let sql = substitute(&q.query, start, end);
                match engine.execute(&sql).await {
                    Ok(r) => {
                        ok.inc();
                        let mut json_rows = Vec::new();
                        for b in &r.batches {
                            json_rows.extend(rows_as_json(b));
                            export_gauges(&registry, family, b, &mut series[i]);
                        }
                        results.push(&q.name, start, end, &json_rows);
                    }
                    Err(e) => {
                        failed.inc();
                        tracing::warn!("continuous query {}: {e}", q.name);
                    }
                }
            }
        }
    }
}

fn rows_as_json(b: &RecordBatch) -> Vec<String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        if w.write(b).is_err() || w.finish().is_err() {
            return Vec::new();
        }
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .map(str::to_string)
        .collect()
}

fn export_gauges(registry: &Registry, family: &'static str, b: &RecordBatch, series: &mut usize) {
    let schema = b.schema();
    let label_cols: Vec<usize> = (0..b.num_columns())
        .filter(|i| {
            matches!(
                schema.field(*i).data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            )
        })
        .collect();
    for row in 0..b.num_rows() {
        let mut labels: Vec<(&'static str, String)> = Vec::new();
        for &c in &label_cols {
            let col = arrow::compute::cast(b.column(c), &DataType::Utf8).ok();
            let v = col
                .as_ref()
                .and_then(|a| a.as_any().downcast_ref::<arrow::array::StringArray>())
                .and_then(|a| (!a.is_null(row)).then(|| a.value(row).to_string()))
                .unwrap_or_default();
            let name: &'static str = leak_label(schema.field(c).name());
            labels.push((name, v));
        }
        for (c, f) in schema.fields().iter().enumerate() {
            if !f.data_type().is_numeric() {
                continue;
            }
            let Ok(col) = arrow::compute::cast(b.column(c), &DataType::Float64) else {
                continue;
            };
            let Some(col) = col.as_any().downcast_ref::<arrow::array::Float64Array>() else {
                continue;
            };
            if col.is_null(row) {
                continue;
            }
            let mut l: Vec<(&'static str, &str)> = vec![("column", f.name().as_str())];
            l.extend(labels.iter().map(|(k, v)| (*k, v.as_str())));
            let known = registry.contains(family, &l);
            if !known && *series >= MAX_SERIES_PER_QUERY {
                continue;
            }
            if !known {
                *series += 1;
            }
            // A name that clashes with a counter (config validation refuses the known ones)
            // publishes nothing rather than panicking the continuous-query task.
            if let Some(g) = registry.try_gauge(
                family,
                "Result of a continuous query (sql.continuous), per numeric column.",
                &l,
            ) {
                g.set(col.value(row));
            }
        }
    }
}

/// Label names must be 'static in the registry; column names of configured queries are few.
fn leak_label(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = match NAMES.lock() {
        Ok(n) => n,
        Err(p) => p.into_inner(),
    };
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_placeholders_become_timestamp_literals() {
        let q = substitute(
            "SELECT 1 FROM red WHERE window_start >= $window_start AND window_end <= $window_end",
            1_700_000_000_000_000_000,
            1_700_000_010_000_000_000,
        );
        assert_eq!(
            q,
            "SELECT 1 FROM red WHERE window_start >= TIMESTAMP '2023-11-14T22:13:20.000Z' AND window_end <= TIMESTAMP '2023-11-14T22:13:30.000Z'"
        );
    }
}
